"""Lectern's common package: every Cloud Function imports what it needs from here.

Modules are split by concern and import their heavy dependencies lazily, so a
function pays at cold start only for what it uses.
"""
