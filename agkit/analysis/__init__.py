"""Looking at trained models: shortcut diagnostics, which images to annotate, sentences from numbers."""
