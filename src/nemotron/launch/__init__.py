"""nemotron.launch"""
