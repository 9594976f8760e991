"""chanlab's protocol layer: BOLT 1/2/3/8 as pure code, plus thin I/O shells marked "I/O:".

This package never imports ``regtest``: chain access is injected (see ``channel.chain``).
"""
