"""nemotron.config"""
