"""rankstack.llm"""
