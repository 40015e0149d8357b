"""MITP as a peft tuner: what peft calls (`MITPConfig`, `MITPModel`, `MITPLayer`, the registration), how the backbone's
forward becomes MITP's, where an adapter sits on a backbone, and the checks of what an adapter loads."""
