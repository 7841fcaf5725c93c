"""File formats: raw deliveries read as text, byte-exact tokenizers, the JSON minilake writes."""
