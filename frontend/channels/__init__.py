"""Messaging channels outside the web page (WeChat Official Accounts, WeCom) over the same conversation pipeline."""
