"""Viewer assets (HTML, JS, CSS). A package only so that setuptools ships the files with the wheel."""
