"""The course around the method: notebook setup, Colab, exercises, student versions, figures, running it all."""
