"""rankstack.distill"""
