"""Sandbox PBX: an AMI server that behaves like Asterisk running our dialplan."""
