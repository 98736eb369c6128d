"""The Android side: benchmark_model provisioning, command builder, output parser, samplers."""
