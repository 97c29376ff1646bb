"""Hugging Face ``config.json`` mappings, one function per model family (entry point:
:func:`hwsim.profiles.hf_config.model_from_hf_config`)."""
