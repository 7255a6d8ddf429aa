"""What training can also do: checkpoints, time limits, progress, several processes,
precision, logs; and the guards and timers of a step."""
