"""ExecuTorch on a CPU quantlab reaches: the ``.pte`` runner (:mod:`.runner`, one process per
repeat like the LiteRT runner) and its host glue (:mod:`.host`: the runtime's version, whether
the ``torch`` extra is installed, the runner's results → records), shared by every device
family that runs ``.pte`` files on this host."""
