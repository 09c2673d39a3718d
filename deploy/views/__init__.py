"""What the operator commands show (inv traffic; more views move here)."""
