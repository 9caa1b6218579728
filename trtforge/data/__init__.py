"""What flows into and out of a module: example inputs and reference tensors (`tensors`), where
inputs come from (`sources`, `samples`), dynamic dims and profiles (`dims`) and the caller's view
of inputs and outputs that baking passes change (`transforms`). Shared: any stage may import it."""
