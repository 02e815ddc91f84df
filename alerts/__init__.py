"""Alerts: findings become alerts; alerts reach people, climb the ladder, get answered."""
