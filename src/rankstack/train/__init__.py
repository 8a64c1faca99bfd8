"""rankstack.train"""
