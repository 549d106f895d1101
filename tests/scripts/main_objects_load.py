"""Loads a payload written by main_objects_dump.py in a fresh process and checks each object.

Prints one line per check, "name OK" or "name FAIL <why>"; exits 0 even on failures (the test
reads the lines), 3 if the payload does not load at all.

usage: main_objects_load.py {omnipickle,cloudpickle,dill} IN
"""

import sys


def frozen(point):
    try:
        point.x = 9
    except AttributeError:
        return True
    return False


CHECKS = {
    "lambda": lambda o: o["lambda"](2) == 6,
    "closure": lambda o: o["closure"](1) == 16,
    "recursive_closure": lambda o: o["recursive_closure"](5) == 120,
    "recursive_function": lambda o: o["recursive_function"](5) == 120,
    "decorated": lambda o: o["decorated"](1) == 22 and o["decorated"].__name__ == "decorated",
    "dataclass_slots_frozen": lambda o: (
        o["point"].norm2() == 25 and not hasattr(o["point"], "__dict__") and frozen(o["point"])
    ),
    "enum": lambda o: o["color"] is o["Color"].GREEN and o["color"].value == 2,
    "namedtuple": lambda o: o["pair"].b == "x" and o["pair"]._fields == ("a", "b"),
    "nested_class": lambda o: (
        o["inner"].hello() == "inner" and o["Inner"].__qualname__ == "Outer.Inner"
    ),
    "slots_class": lambda o: (
        o["slotted"].a == 1
        and not hasattr(o["slotted"], "__dict__")
        and o["Slotted"].__slots__ == ("a", "b")
    ),
    "dynamic_class": lambda o: o["dynamic"].twice() == 10 and o["Dynamic"].__name__ == "Dynamic",
}

if __name__ == "__main__":
    library, path = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        data = f.read()
    try:
        if library == "omnipickle":
            import omnipickle

            objects = omnipickle.loads(data)
        elif library == "dill":
            import dill

            objects = dill.loads(data)
        else:
            import pickle

            objects = pickle.loads(data)
    except Exception as exc:
        print(f"LOAD FAIL {type(exc).__name__}: {exc}")
        raise SystemExit(3) from None
    for name, check in CHECKS.items():
        try:
            ok = check(objects)
        except Exception as exc:
            print(f"{name} FAIL {type(exc).__name__}: {exc}")
        else:
            print(f"{name} {'OK' if ok else 'FAIL wrong result'}")
