"""Modules and a graph pass with known faults, each meant to be blamed on one stage."""
