"""nemotron.cli"""
