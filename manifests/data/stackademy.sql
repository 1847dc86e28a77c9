-- The demo course catalogue behind the stackademy_catalogue SqlPlugin.
-- Built into data/stackademy.sqlite3 (the daemon's data directory) by `make run` and by the tests.
CREATE TABLE courses (
    course_id INTEGER PRIMARY KEY,
    course_code TEXT NOT NULL UNIQUE,
    course_name TEXT NOT NULL,
    description TEXT NOT NULL,
    cost REAL NOT NULL,
    prerequisite_id INTEGER REFERENCES courses (course_id),
    seats_left INTEGER NOT NULL
);
INSERT INTO courses VALUES
    (1, 'CS101', 'Introduction to Programming', 'Python fundamentals for web and data work', 300, NULL, 12),
    (2, 'CS201', 'Data Structures', 'Lists, trees, graphs and the database indexes built on them', 450, 1, 4),
    (3, 'CS301', 'Machine Learning', 'Supervised learning and neural networks: an AI foundation', 900, 2, 0),
    (4, 'CS310', 'Applied AI', 'Building AI assistants with language models', 600, 1, 25),
    (5, 'CS220', 'Mobile Apps', 'Mobile development for iOS and Android', 500, 1, 9),
    (6, 'CS230', 'Computer Networks', 'TCP/IP, routing and network security', 550, 1, 7),
    (7, 'CS240', 'Web Development', 'HTML, CSS, JavaScript and web APIs', 400, 1, 30);
