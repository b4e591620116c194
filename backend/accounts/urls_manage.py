"""Admins' pages and their JSON API: users, groups, shares, tokens, audit."""

urlpatterns: list = []
