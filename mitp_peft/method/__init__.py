"""The method itself, free of peft and of any backbone family: one adapter's trainable state and forward, the joint
forward of the two towers, the memory hub, the heads and their loss, missing modalities, several adapters in one
call. See docs/METHOD.md."""
