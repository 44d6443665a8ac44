# Docker targets: see docker.mk (containers issue).
