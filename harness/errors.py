"""One exception root for quantlab, with user errors kept apart from device faults.

* :class:`UserError` and its subclasses are mistakes the user can fix (a bad path,
  a model that is not a TFLite file, an unknown device). The CLI prints their
  one-line message on stderr and exits with code 2.
* :class:`DeviceFault` and its subclasses are transient problems of a device
  (it disconnected, it timed out). The dispatcher retries the job when the
  device comes back.
* :class:`DeviceUnusable` is a user error scoped to one device that will repeat for
  every job on it (runner not installed, phone not trusted or not authorized,
  Developer Mode off). The job that met it is stored ``failed`` with the message;
  the device's remaining jobs are stored ``skipped`` with the same reason.
* :class:`JobFailed` is a runtime failure of one job (the runtime refused the
  model on that device). The job is stored as ``failed`` with the message; the
  other jobs go on.
"""

from __future__ import annotations


class QuantlabError(Exception):
    """Root of every error quantlab raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and its hint as one line for the terminal."""
        return f"{self.message}: {self.hint}" if self.hint else self.message


class UserError(QuantlabError):
    """A mistake in what the user asked for; exit code 2."""


class ModelError(UserError):
    """A model file that is missing, corrupt or unsupported."""

    def __init__(self, path: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}", hint=hint)
        self.path = path


class DataError(UserError):
    """Calibration or evaluation data that does not fit the model."""


class UnknownDeviceError(UserError):
    """A device id or delegate that no agent knows."""


class StoreError(UserError):
    """The results store cannot be opened, written or read."""


class DeviceUnusable(UserError):
    """A user error that will repeat for every job on ``device_id`` until the user acts.

    The dispatcher fails the job that met it and skips the device's remaining jobs
    with its :meth:`one_line` as the reason, instead of failing each one alike.
    """

    def __init__(self, device_id: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.device_id = device_id


class DeviceFault(QuantlabError):
    """A transient device problem; the dispatcher retries the job."""

    def __init__(self, device_id: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{device_id}: {message}", hint=hint)
        self.device_id = device_id


class DeviceDisconnected(DeviceFault):
    """The device went away during a job."""


class DeviceTimeout(DeviceFault):
    """The device did not answer within the time limit."""


class RunIncomplete(QuantlabError):
    """A run ended with jobs not finished (a store that could not write, a run taken over by
    another process); it is stored ``incomplete`` and ``bench --resume`` finishes it."""

    def __init__(self, run_id: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.run_id = run_id


class JobFailed(QuantlabError):
    """The runtime on the device could not run this job; other jobs go on."""
