"""Everything that turns checkpoints into a running Triton: prepare checkpoints, render the model
repository for a profile, launch the server, and (GPU hosts) quantize and build TensorRT-LLM engines."""
