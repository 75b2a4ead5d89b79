"""WeChat Official Account (公众号) and WeCom (企业微信, 微信客服) callbacks and outbound APIs.

`crypto` and `messages` speak the callback wire format, `api` and `tokens` the outbound HTTP APIs, `endpoints`
the configured accounts, `turns` the 5-second passive/async reply rule, `outbox` and `recovery` deliveries that
survive a replica's death, `satisfaction` the rating menus, and `hub` ties them to the gateway's `Conversation`.
"""
