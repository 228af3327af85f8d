from onet.cli import entry

entry()
