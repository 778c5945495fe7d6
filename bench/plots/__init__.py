"""Plots of what the methods learned (gate weights, LoraHub weights, router load), drawn from finished cells."""
