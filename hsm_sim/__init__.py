"""hsm_sim — the key store: private keys are generated, used and destroyed here, never exported."""
