"""YAML that refuses duplicate mapping keys.

PyYAML's safe_load keeps the last of two equal keys without a word, so a file reading
`allowed_categories: []` near the top and `allowed_categories: [Violence]` further down is served
with Violence allowed while a reviewer reads the first line. Files a person edits and a program
trusts (safety configs, the keys file) are read with `load` instead: a duplicate key is an
InputError naming the file, the key and both lines.
"""

from __future__ import annotations

import yaml

from cosalign.core.io import InputError


class DuplicateKeyError(yaml.constructor.ConstructorError):
    def __init__(self, key, first_line: int, node_mark):
        super().__init__(None, None, f"duplicate key {key!r} (first at line {first_line})", node_mark)
        self.key, self.first_line, self.line = key, first_line, node_mark.line + 1


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` then `key: value` is an override, not a duplicate
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader reports it below
                    continue
                if first is not None:
                    raise DuplicateKeyError(key, first, key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _UniqueKeyLoader.construct_mapping)


def load(text: str, path):
    """`yaml.safe_load(text)`, refusing duplicate keys; errors are InputErrors naming `path`."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 -- a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise InputError(path, f"line {exc.line}: duplicate key {exc.key!r} (first at line "
                               f"{exc.first_line}); a YAML mapping keeps only one value per key",
                         field=str(exc.key)) from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
