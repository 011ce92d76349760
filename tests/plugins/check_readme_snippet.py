"""Fails unless the README's plugin snippet is the file the build compiles.

Usage: check_readme_snippet.py README.md examples/plugin/readme_plugin.cc
The snippet is the first ```cpp block after the "### Plugins" heading.
"""
import sys


def snippet(readme_text):
    after = readme_text.split("\n### Plugins\n", 1)
    if len(after) != 2:
        sys.exit('README has no "### Plugins" section')
    block = after[1].split("```cpp\n", 1)
    if len(block) != 2 or "```" not in block[1]:
        sys.exit('README\'s "### Plugins" section has no ```cpp block')
    return block[1].split("```", 1)[0]


def main():
    readme_path, source_path = sys.argv[1], sys.argv[2]
    with open(readme_path, encoding="utf-8") as f:
        shown = snippet(f.read())
    with open(source_path, encoding="utf-8") as f:
        built = f.read()
    if shown != built:
        sys.exit(f"the README's plugin snippet differs from {source_path}: copy the file "
                 "into the README (it is compiled by the build, the README is not)")
    print("README plugin snippet == " + source_path)


if __name__ == "__main__":
    main()
