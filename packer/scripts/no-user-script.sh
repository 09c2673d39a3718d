#!/bin/bash
# Stands in for PRIMAL_SCRIPT / CARNIVORE_SCRIPT when the environment names none: does nothing.
set -euo pipefail
