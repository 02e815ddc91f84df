"""SMS providers as apprise plugins: Aliyun and Tencent Cloud, over one shared base."""
