"""The dashboard in a real browser: Chromium driven by Playwright (SQLite pass only)."""
