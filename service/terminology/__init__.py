"""Terminology built from published sources: harvest (mirrors -> committed extracts) and expansion generation."""
