"""Fine-tuning ODISE's trainable head on exported annotations (the diffusion model and CLIP stay frozen)."""
