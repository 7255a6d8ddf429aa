"""Looking at trained models: shortcut diagnostics, which images to annotate, and the
sentences a notebook prints, computed from the numbers."""
