"""rankstack.retrieve"""
