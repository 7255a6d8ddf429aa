"""The course around the method: notebook setup, Colab, exercises, student versions,
figures, and running it all."""
