"""rankstack.serve"""
