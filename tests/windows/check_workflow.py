#!/usr/bin/env python3
"""check_workflow.py SOURCE_ROOT - .github/workflows/windows.yml stays valid while nothing here can run it.

It must parse as YAML (PyYAML), pass yamllint, build with MSYS2 UCRT64 and meson, name its Windows test list
explicitly (WINDOWS_TESTS), and that list must be exactly the tests of tests/windows/native_tests.py (a test added to
the driver and not to the workflow, or a name the driver does not know, fails here). It must also run
scripts/windows-check.ps1. Exit 0 when all holds, 1 with every reason otherwise.
"""
import importlib.util
import os
import shutil
import subprocess
import sys


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    path = os.path.join(root, ".github", "workflows", "windows.yml")
    problems = []
    try:
        import yaml
    except ImportError:
        print("check_workflow: PyYAML is missing (scripts/bootstrap installs python3-yaml)", file=sys.stderr)
        return 1
    with open(path) as f:
        text = f.read()
    try:
        workflow = yaml.safe_load(text)
    except yaml.YAMLError as e:
        print("check_workflow: %s does not parse: %s" % (path, e), file=sys.stderr)
        return 1

    yamllint = shutil.which("yamllint")
    if not yamllint:
        problems.append("yamllint is missing (scripts/bootstrap installs it)")
    else:
        config = "{extends: default, rules: {line-length: {max: 120}, truthy: {check-keys: false}, " \
                 "document-start: disable}}"
        done = subprocess.run([yamllint, "-f", "parsable", "-d", config, path], capture_output=True, text=True)
        if done.returncode != 0:
            problems.append("yamllint: " + (done.stdout + done.stderr).strip())

    # YAML 1.1 reads the key `on` as true.
    triggers = workflow.get("on", workflow.get(True))
    if not triggers:
        problems.append("no `on:` triggers")
    jobs = workflow.get("jobs") or {}
    job = jobs.get("native")
    if not job:
        problems.append("no job `native`")
        job = {}
    if not str(job.get("runs-on", "")).startswith("windows"):
        problems.append("job native does not run on a hosted Windows runner: runs-on %r" % job.get("runs-on"))
    steps = job.get("steps") or []
    msys2 = [s for s in steps if str(s.get("uses", "")).startswith("msys2/setup-msys2@")]
    if not msys2:
        problems.append("no msys2/setup-msys2 step")
    else:
        options = msys2[0].get("with") or {}
        if options.get("msystem") != "UCRT64":
            problems.append("setup-msys2 msystem is %r, not UCRT64" % options.get("msystem"))
        packages = str(options.get("install", "")).split()
        for want in ("gcc", "meson", "ninja", "python"):
            if "mingw-w64-ucrt-x86_64-" + want not in packages:
                problems.append("setup-msys2 does not install mingw-w64-ucrt-x86_64-%s" % want)
    runs = [str(s.get("run", "")) for s in steps]
    if not any("meson setup" in r for r in runs) or not any("ninja -C" in r for r in runs):
        problems.append("no meson setup / ninja build step")
    if not any("native_tests.py" in r and "$WINDOWS_TESTS" in r for r in runs):
        problems.append("no step runs tests/windows/native_tests.py with $WINDOWS_TESTS")
    if not any("windows-check.ps1" in str(s.get("run", "")) and s.get("shell") in ("pwsh", "powershell")
               for s in steps):
        problems.append("no PowerShell step runs scripts/windows-check.ps1")

    listed = str((job.get("env") or {}).get("WINDOWS_TESTS", "")).split()
    if not listed:
        problems.append("the job names no test list (env WINDOWS_TESTS)")
    duplicates = sorted({name for name in listed if listed.count(name) > 1})
    if duplicates:
        problems.append("tests listed twice: %s" % ", ".join(duplicates))
    spec = importlib.util.spec_from_file_location("native_tests", os.path.join(root, "tests", "windows",
                                                                               "native_tests.py"))
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    known = [test.__name__ for test in driver.TESTS]
    unknown = [name for name in listed if name not in known]
    if unknown:
        problems.append("the workflow lists tests the driver does not have: %s" % ", ".join(unknown))
    missing = [name for name in known if name not in listed]
    if missing:
        problems.append("the driver has tests the workflow does not list: %s" % ", ".join(missing))
    if not os.path.isfile(os.path.join(root, "scripts", "windows-check.ps1")):
        problems.append("scripts/windows-check.ps1 is missing")

    for problem in problems:
        print("check_workflow: %s: %s" % (path, problem), file=sys.stderr)
    if not problems:
        print("%s: parses, passes yamllint, runs %d named Windows tests: %s" % (path, len(listed), " ".join(listed)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
