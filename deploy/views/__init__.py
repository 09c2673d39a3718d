"""What the tool shows without changing anything: status, and plans (dry runs)."""
