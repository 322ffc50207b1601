from macvland.cli import entry

entry()
