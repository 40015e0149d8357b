"""The model card template of MITP adapters, installed as `mitp_peft.model_cards`."""
