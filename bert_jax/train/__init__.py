"""The training engine: state, optimizers, the jitted steps and the loop."""
