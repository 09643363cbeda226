"""Every google.api.http binding of the generated flowport.v1 protos, read from their
descriptors: the tests that hold the REST routes to the protos walk them from here."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf.descriptor import MethodDescriptor

import flowport.v1


@dataclass(frozen=True)
class HttpBinding:
    verb: str  # GET, POST, ... (upper case)
    template: str  # the path template as annotated, `{name=pattern}` and all
    body: str
    method: MethodDescriptor


def http_bindings() -> Iterator[HttpBinding]:
    for module_info in pkgutil.iter_modules(flowport.v1.__path__):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"flowport.v1.{module_info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(annotations_pb2.http):
                    continue
                rule = options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    verb = binding.WhichOneof("pattern")
                    if verb == "custom":
                        verb, template = binding.custom.kind, binding.custom.path
                    else:
                        template = getattr(binding, verb)
                    yield HttpBinding(verb.upper(), template, binding.body, method)
