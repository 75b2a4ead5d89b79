"""WeChat Official Account (公众号) and WeCom (企业微信, 微信客服) callbacks and outbound APIs.

`crypto` and `messages` speak the callback wire format, `api` and `tokens` the outbound HTTP APIs, `turns` the
5-second passive/async reply rule, and `hub` ties them to the gateway's `Conversation`.
"""
