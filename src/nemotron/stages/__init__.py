"""nemotron.stages"""
