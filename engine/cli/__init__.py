"""The headless command line (``python main.py COMMAND``): every command's parser and what it runs. User mistakes
end with one ``error:`` line and exit status 2.
"""
