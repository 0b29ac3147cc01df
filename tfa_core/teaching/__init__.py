"""What the course needs beyond the model.

- ``environment.py`` quick mode and the environment report every notebook prints
- ``widgets.py``     the notebooks' interactive widgets
- ``exercises/``     the exercises and ``check``
- ``grading.py``     ``tfa grade``: an instructor grades a class's notebooks
- ``gradebook.py``   ``tfa grade --gradebook``: LMS layouts, a roster, points, a CSV and feedback per student
- ``release.py``     ``tfa release``: the students' copy (no answers) and the instructors' copy
"""
