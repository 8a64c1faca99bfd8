"""rankstack.evaluate"""
