"""``python -m services.teachers``: serve the SIMULATED teacher panel (the options: `cli`).

This is also what `TeacherPanelServer` runs in a subprocess.
"""

from services.teachers.cli import main

if __name__ == "__main__":
    main()
